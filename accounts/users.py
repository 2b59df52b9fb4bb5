"""Users: creating them, checking their passwords, changing their settings, deleting them."""
from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time

from peewee import IntegrityError

from slipway.db import database
from slipway.errors import Conflict, Forbidden, Invalid, LoginFailed, NotFound

from . import audit, revocation
from .identity import Identity
from .models import ORG, TIME_MACHINE_CHOICES, USER, Account, Session, Team, TeamMember
from .names import namespace_name_problem
from .passwords import hash_password, needs_rehash, verify_password


class LoginError(LoginFailed):
    """Credentials that do not identify anyone (or an account that may not log in)."""


MIN_PASSWORD_LENGTH = 8


def check_password_rules(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise Invalid(f"Password must be at least {MIN_PASSWORD_LENGTH} characters")


def check_new_namespace(name: str, what: str = "username") -> None:
    problem = namespace_name_problem(name)
    if problem:
        raise Invalid(f"Invalid {what} '{name}': {problem}")
    if Account.select().where(Account.name == name).exists():
        raise Conflict(f"The name '{name}' is already taken")


def create_user(name: str, password: str | None, email: str | None = None, superuser: bool = False,
                performer: Identity | None = None, ip: str | None = None) -> Account:
    check_new_namespace(name)
    if password is not None:
        check_password_rules(password)
    if email is not None and "@" not in email:
        raise Invalid(f"Invalid email address '{email}'")
    try:
        with database.atomic():
            user = Account.create(name=name, kind=USER, email=email,
                                  password_hash=hash_password(password) if password else None, superuser=superuser)
            audit.record("user_create", performer, namespace=user, ip=ip,
                         metadata={"username": name, "superuser": superuser})
            return user
    except IntegrityError:
        raise Conflict(f"The name '{name}' is already taken") from None


def get_user(name: str) -> Account:
    user = Account.get_or_none((Account.name == name) & (Account.kind == USER))
    if user is None:
        raise NotFound(f"User '{name}' does not exist")
    return user


def get_account(account_id: int) -> Account:
    """The account an identity names (it authenticated a moment ago)."""
    return Account.get_by_id(account_id)


def list_users() -> list[Account]:
    return list(Account.select().where(Account.kind == USER).order_by(Account.name))


def set_status(user: Account, performer: Identity, ip: str | None = None, enabled: bool | None = None,
               superuser: bool | None = None) -> Account:
    """A superuser's changes to a user: enable or disable the account, give or take superuser rights. Nobody
    disables themselves or takes their own superuser rights (the server must keep someone who can undo it)."""
    if user.id == performer.account_id and (enabled is False or superuser is False):
        raise Invalid("You cannot disable your own account or take away your own superuser rights")
    with database.atomic():
        if enabled is not None and enabled != user.enabled:
            Account.update(enabled=enabled).where(Account.id == user.id).execute()
            if not enabled:
                Session.delete().where(Session.account == user.id).execute()
            revocation.bump()
            audit.record("user_enable" if enabled else "user_disable", performer, namespace=user, ip=ip,
                         metadata={"username": user.name})
        if superuser is not None and superuser != user.superuser:
            Account.update(superuser=superuser).where(Account.id == user.id).execute()
            revocation.bump()
            audit.record("user_set_superuser", performer, namespace=user, ip=ip,
                         metadata={"username": user.name, "superuser": superuser})
    return Account.get_by_id(user.id)


def get_user_or_robot(name: str) -> Account:
    account = Account.get_or_none((Account.name == name) & (Account.kind.in_([USER, "robot"])))
    if account is None:
        raise NotFound(f"User or robot '{name}' does not exist")
    return account


def identity_for(account: Account, via: str, scopes: frozenset | None = None, token_id: int | None = None) -> Identity:
    return Identity(kind=account.kind, account_id=account.id, name=account.name, superuser=account.superuser,
                    via=via, scopes=scopes, token_id=token_id, epoch=account.credential_epoch,
                    namespace_id=account.owner_id if account.kind == "robot" else None)


# Argon2 is slow on purpose (~0.1 s). Clients send the same password with every API call and
# token request, so a verified (user, password) pair is remembered for a few minutes, keyed by
# an HMAC under a per-process random key. The entry only counts while the stored hash is
# unchanged, so a password change or reset ends it at once.
_DUMMY_HASH = hash_password(secrets.token_urlsafe(16))
VERIFIED_TTL = 300


class VerifiedPasswords:
    """(user, password) pairs verified lately, under an HMAC with a random key of their own.

    A pair counts for ``ttl`` seconds while the account's stored hash is the one it was verified
    against. ``clock`` gives the time (tests pass their own).
    """

    def __init__(self, ttl: float = VERIFIED_TTL, limit: int = 10000, clock=time.time):
        self.ttl, self.limit, self.clock = ttl, limit, clock
        self._key = secrets.token_bytes(32)
        self._pairs: dict[bytes, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def _digest(self, username: str, password: str) -> bytes:
        return hmac.new(self._key, f"{username}\0{password}".encode(), hashlib.sha256).digest()

    def known(self, username: str, password: str, password_hash: str) -> bool:
        remembered = self._pairs.get(self._digest(username, password))
        return remembered is not None and remembered[0] == password_hash and remembered[1] > self.clock()

    def remember(self, username: str, password: str, password_hash: str) -> None:
        with self._lock:
            if len(self._pairs) > self.limit:
                self._pairs.clear()
            self._pairs[self._digest(username, password)] = (password_hash, self.clock() + self.ttl)


#: This process's verified pairs (``login_with_password`` uses it unless given its own).
VERIFIED = VerifiedPasswords()


def login_with_password(username: str, password: str, verified_pairs: VerifiedPasswords = VERIFIED) -> Identity:
    account = Account.get_or_none((Account.name == username) & (Account.kind == USER))
    if account is not None and verified_pairs.known(username, password, account.password_hash):
        verified = True
    else:
        # Unknown users cost an Argon2 check too, so timing does not tell which names exist.
        verified = verify_password(account.password_hash if account is not None else _DUMMY_HASH, password) \
            and account is not None
    if not verified:
        raise LoginError("Invalid username or password")
    if not account.enabled:
        raise LoginError("This account is disabled")
    if needs_rehash(account.password_hash):
        account.password_hash = hash_password(password)
        Account.update(password_hash=account.password_hash).where(Account.id == account.id).execute()
    verified_pairs.remember(username, password, account.password_hash)
    return identity_for(account, "password")


def change_password(user: Account, password: str, performer: Identity, ip: str | None = None) -> None:
    """Set ``user``'s password. Only with the current one: a token that leaks must not become the account
    (Quay's ``PUT /user/`` is internal-only and needs a fresh login for the same reason)."""
    if performer.account_id == user.id and performer.via != "password":
        raise Forbidden("Changing the password needs the current password: send this request with basic auth "
                        "(your username and current password), not with a token")
    check_password_rules(password)
    with database.atomic():
        Account.update(password_hash=hash_password(password)).where(Account.id == user.id).execute()
        revocation.bump()  # basic credentials remembered with the old password (on /v2) end at once
        Session.delete().where(Session.account == user.id).execute()  # and every browser session
        audit.record("user_change_password", performer, namespace=user, ip=ip, metadata={"username": user.name})


def change_email(user: Account, email: str, performer: Identity, ip: str | None = None) -> None:
    if "@" not in email:
        raise Invalid(f"Invalid email address '{email}'")
    with database.atomic():
        Account.update(email=email).where(Account.id == user.id).execute()
        audit.record("user_change_email", performer, namespace=user, ip=ip,
                     metadata={"username": user.name, "email": email})


def set_time_machine(namespace: Account, seconds: int, performer: Identity, ip: str | None = None) -> None:
    """A user's or organization's time machine window (how long ended tags stay restorable)."""
    if seconds not in TIME_MACHINE_CHOICES:
        raise Invalid(f"Invalid time machine window {seconds}s: choose one of "
                      f"{', '.join(str(c) for c in TIME_MACHINE_CHOICES)} seconds (0s, 1d, 7d, 14d, 4w)")
    with database.atomic():
        Account.update(time_machine_s=seconds).where(Account.id == namespace.id).execute()
        audit.record("change_tag_expiration", performer, namespace=namespace, ip=ip,
                     metadata={"tag_expiration_s": seconds})


def update_settings(user: Account, performer: Identity, ip: str | None = None, password: str | None = None,
                    email: str | None = None, time_machine_s: int | None = None) -> Account:
    """Change a user's password, email and/or time machine window: all of them or none."""
    with database.atomic():
        if password is not None:
            change_password(user, password, performer, ip)
        if email is not None:
            change_email(user, email, performer, ip)
        if time_machine_s is not None:
            set_time_machine(user, time_machine_s, performer, ip)
    return Account.get_by_id(user.id)


def orgs_solely_administered_by(user: Account) -> list[str]:
    """Organizations where ``user`` is the only member of every admin team."""
    sole = []
    admin_orgs = (Account.select(Account).join(Team, on=(Team.org == Account.id)).join(TeamMember)
                  .where((Team.role == "admin") & (TeamMember.account == user.id) & (Account.kind == ORG))
                  .distinct())
    for org in admin_orgs:
        others = (TeamMember.select().join(Team)
                  .where((Team.org == org.id) & (Team.role == "admin") & (TeamMember.account != user.id)
                         & (TeamMember.account.in_(Account.select(Account.id).where(Account.kind == USER)))))
        if not others.exists():
            sole.append(org.name)
    return sole


def delete_user(user: Account, performer: Identity, ip: str | None = None) -> None:
    sole = orgs_solely_administered_by(user)
    if sole:
        raise Conflict(f"User '{user.name}' is the only administrator of organization(s) {', '.join(sorted(sole))}: "
                       "add another administrator or delete the organization first")
    with database.atomic():
        audit.record("user_delete", performer, namespace=(user.id, user.name), ip=ip, metadata={"username": user.name})
        user.delete_instance(recursive=False)
        revocation.bump()


def ensure_admin(name: str, password: str | None) -> tuple[Account, str | None]:
    """On an empty database, create the first (super)user. Returns it and a generated password, if any."""
    if Account.select().where(Account.kind == USER).exists():
        return None, None
    generated = None
    if not password:
        password = generated = secrets.token_urlsafe(12)
    return create_user(name, password, superuser=True), generated
