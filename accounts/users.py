"""Creating users and checking their passwords."""
from __future__ import annotations

import secrets

from peewee import IntegrityError

from slipway.db import database

from .identity import Identity
from .models import USER, Account
from .names import namespace_name_problem
from .passwords import hash_password, needs_rehash, verify_password


class AccountError(Exception):
    """A request about accounts that cannot be done; ``status`` is the HTTP status to answer."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.message = message
        self.status = status


class LoginError(Exception):
    """Credentials that do not identify anyone (or an account that may not log in)."""


MIN_PASSWORD_LENGTH = 8


def create_user(name: str, password: str | None, email: str | None = None, superuser: bool = False) -> Account:
    problem = namespace_name_problem(name)
    if problem:
        raise AccountError(f"Invalid username '{name}': {problem}")
    if password is not None and len(password) < MIN_PASSWORD_LENGTH:
        raise AccountError(f"Password must be at least {MIN_PASSWORD_LENGTH} characters")
    try:
        with database.atomic():
            return Account.create(
                name=name,
                kind=USER,
                email=email,
                password_hash=hash_password(password) if password else None,
                superuser=superuser,
            )
    except IntegrityError:
        raise AccountError(f"The name '{name}' is already taken", status=409) from None


def identity_for(account: Account, via: str) -> Identity:
    return Identity(kind=account.kind, account_id=account.id, name=account.name,
                    superuser=account.superuser, via=via)


def login_with_password(username: str, password: str) -> Identity:
    account = Account.get_or_none((Account.name == username) & (Account.kind == USER))
    if account is None or not verify_password(account.password_hash, password):
        raise LoginError("Invalid username or password")
    if not account.enabled:
        raise LoginError("This account is disabled")
    if needs_rehash(account.password_hash):
        Account.update(password_hash=hash_password(password)).where(Account.id == account.id).execute()
    return identity_for(account, "password")


def ensure_admin(name: str, password: str | None) -> tuple[Account, str | None]:
    """On an empty database, create the first (super)user. Returns it and a generated password, if any."""
    if Account.select().where(Account.kind == USER).exists():
        return None, None
    generated = None
    if not password:
        password = generated = secrets.token_urlsafe(12)
    return create_user(name, password, superuser=True), generated
