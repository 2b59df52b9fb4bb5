"""Browser sessions of the web interface, and the throttle on failed sign-ins.

A session id is 256 random bits handed to the browser in a cookie; the table keeps only its SHA-256
(``crypto.hash_token``), so the table signs no one in. Each session has a CSRF token of its own
that every state-changing request authenticated by the cookie must send back (``ui.web`` checks it
for forms, ``slipway.api`` for /api/v1). A session ends when it expires, when it is signed out,
when its user's password changes (``users.change_password`` deletes the user's sessions), when the
user is deleted (the row cascades) and, while the user is disabled, it answers nobody.

Failed sign-ins are throttled from the audit log, which records every failure synchronously
(``login.authenticate``): more than ``ACCOUNT_FAILURES`` failures for one account, or
``ADDRESS_FAILURES`` from one client address, within ``THROTTLE_WINDOW`` seconds refuse further
attempts (before the password is checked) until the oldest failure leaves the window. Being read
from the database, the rule holds across HTTP processes and restarts. Attempts whose password is being
checked right now have no audit entry yet, so ``IN_FLIGHT`` counts them in this process as failures to
come: a burst of simultaneous attempts gets no more tries than attempts made one after another.
"""
from __future__ import annotations

import secrets
import threading
from contextlib import contextmanager
from dataclasses import dataclass

from slipway import crypto
from slipway.db import now_ms

from .identity import Identity
from .models import USER, Account, LogEntry, Session
from .users import identity_for

#: How long a session lasts after sign-in, unless the configuration says otherwise.
SESSION_TTL = 7 * 86400
#: ``last_seen`` is written at most this often per session (ms), not on every request.
TOUCH_EVERY_MS = 60_000

THROTTLE_WINDOW = 15 * 60
ACCOUNT_FAILURES = 5
ADDRESS_FAILURES = 20


@dataclass(frozen=True)
class SessionInfo:
    identity: Identity
    csrf_token: str
    expires_at: int


def create(account: Account, ip: str | None = None, user_agent: str = "", ttl: int = SESSION_TTL) -> tuple[str, str]:
    """Start a session for ``account``; returns (session id for the cookie, CSRF token)."""
    raw = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(32)
    Session.create(id_hash=crypto.hash_token(raw), account=account.id, csrf_token=csrf,
                   expires_at=now_ms() + ttl * 1000, ip=ip, user_agent=(user_agent or "")[:255])
    return raw, csrf


def resolve(raw: str) -> SessionInfo | None:
    """The live session a cookie names, or None (unknown, expired, or its user disabled)."""
    if not raw or len(raw) > 128:
        return None
    row = (Session.select(Session, Account).join(Account)
           .where(Session.id_hash == crypto.hash_token(raw)).first())
    now = now_ms()
    if row is None or row.expires_at <= now or not row.account.enabled or row.account.kind != USER:
        return None
    if now - row.last_seen > TOUCH_EVERY_MS:
        Session.update(last_seen=now).where(Session.id == row.id).execute()
    return SessionInfo(identity_for(row.account, "session"), row.csrf_token, row.expires_at)


def end(raw: str) -> None:
    """Sign out: the session is gone."""
    if raw:
        Session.delete().where(Session.id_hash == crypto.hash_token(raw)).execute()


def end_all(account_id: int) -> int:
    """End every session of an account (a password change, a disabled user)."""
    return Session.delete().where(Session.account == account_id).execute()


def purge_expired() -> int:
    """Delete the rows of expired sessions (they already answer nobody)."""
    return Session.delete().where(Session.expires_at <= now_ms()).execute()


def register(background) -> None:
    """The hourly purge of expired sessions (in the background process)."""
    background.every(3600, purge_expired, "accounts.purge_expired_sessions")


class InFlight:
    """Sign-in attempts of this process whose password is being checked now, per username and per address.

    ``attempt(username, ip)`` holds one for the duration of a check and gives how many were already under
    way (account, address): ``sign_in_throttled`` counts those as failures, since their audit entries are
    not written yet. Without it, N attempts sent at once all pass the throttle before the first failure is
    recorded."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple, int] = {}

    @contextmanager
    def attempt(self, username: str, ip: str | None):
        keys = (("account", username), ("address", ip or ""))
        with self._lock:
            ahead = tuple(self._counts.get(key, 0) for key in keys)
            for key in keys:
                self._counts[key] = self._counts.get(key, 0) + 1
        try:
            yield ahead
        finally:
            with self._lock:
                for key in keys:
                    left = self._counts[key] - 1
                    if left:
                        self._counts[key] = left
                    else:
                        del self._counts[key]


#: This process's attempts under way (the sign-in page and the password change use it).
IN_FLIGHT = InFlight()


def sign_in_throttled(username: str, ip: str | None, ahead: tuple[int, int] = (0, 0)) -> str | None:
    """Why a sign-in attempt is refused before its password is checked, or None.

    Counts the ``login_failure`` entries of the audit log in the last ``THROTTLE_WINDOW`` seconds for
    the account named and for the client address, plus ``ahead``: the attempts (account, address) of this
    process still being checked (``IN_FLIGHT.attempt``)."""
    since = now_ms() - THROTTLE_WINDOW * 1000
    failures = LogEntry.select().where((LogEntry.kind == "login_failure") & (LogEntry.created_at >= since))
    account = Account.get_or_none((Account.name == username) & (Account.kind == USER)) if username else None
    account_limit, address_limit = ACCOUNT_FAILURES - ahead[0], ADDRESS_FAILURES - ahead[1]
    if account is not None and _over(failures.where(LogEntry.namespace_id == account.id), account_limit):
        return (f"Too many failed sign-ins for this account: try again in "
                f"{_wait(failures.where(LogEntry.namespace_id == account.id), account_limit)}")
    if ip and _over(failures.where(LogEntry.ip == ip), address_limit):
        return (f"Too many failed sign-ins from your address: try again in "
                f"{_wait(failures.where(LogEntry.ip == ip), address_limit)}")
    return None


def _over(query, limit: int) -> bool:
    return limit <= 0 or query.limit(limit).count() >= limit


def _wait(query, limit: int) -> str:
    """How long until the failure that tips the count over ``limit`` leaves the window (a few seconds when
    attempts under way make up the count: they end that soon)."""
    limit = max(limit, 1)
    rows = list(query.order_by(LogEntry.created_at.desc()).limit(limit))
    if len(rows) < limit:
        return "a few seconds"
    seconds = max(1, (rows[-1].created_at + THROTTLE_WINDOW * 1000 - now_ms() + 999) // 1000)
    return f"{seconds // 60} minutes" if seconds >= 120 else f"{seconds} seconds"
