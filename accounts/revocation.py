"""Revocation of issued credentials without a permission query on every request.

Registry tokens are signed grants, checked once when issued. Every change that takes
rights away (deleting a user, robot, organization, team or repository; removing a grant,
a team member or a team's role; making a repository private; regenerating a robot token;
revoking an API token) calls ``bump()`` in its own transaction, which raises one counter
in the database. Each token carries the counter's value when it was issued; a token
older than the current value is checked again once (``registry.auth.recheck``) and
then carries the new value. Robot regeneration also raises the robot's
``credential_epoch``, which the token names, so the old token's identity is gone.

Each process reads the counter at most every ``READ_EVERY`` seconds, and at once after
its own ``bump()``: a change takes effect at once in the process that made it and
within ``READ_EVERY`` in the others.
"""
from __future__ import annotations

import threading
import time

from .models import Account, AuthGeneration

READ_EVERY = 0.25

_lock = threading.Lock()
_value = 0
_read_at = float("-inf")
_fresh_until = float("-inf")


def bump() -> None:
    """Raise the counter (inside the caller's transaction, so it commits with the change)."""
    global _fresh_until
    updated = AuthGeneration.update(value=AuthGeneration.value + 1).where(AuthGeneration.id == 1).execute()
    if not updated:
        AuthGeneration.insert(id=1, value=1).on_conflict_ignore().execute()
    with _lock:
        # Not cached for a while: a read racing this (uncommitted) change must not be kept.
        _fresh_until = time.monotonic() + 4 * READ_EVERY


def current() -> int:
    """The counter, as read at most ``READ_EVERY`` seconds ago (never newer than the database's)."""
    global _value, _read_at
    now = time.monotonic()
    if now - _read_at < READ_EVERY and now > _fresh_until:
        return _value
    row = AuthGeneration.select(AuthGeneration.value).where(AuthGeneration.id == 1).first()
    with _lock:
        _value = row.value if row is not None else 0
        _read_at = now
    return _value


def new_credentials(account: Account) -> None:
    """The account's credentials were replaced: tokens issued under the old ones end."""
    Account.update(credential_epoch=Account.credential_epoch + 1).where(Account.id == account.id).execute()
    bump()
