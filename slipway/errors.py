"""Errors that plain logic raises: what went wrong, never how it is answered.

A use case raises one of these kinds; each API family maps them to its wire
format in one place: the /api/v1 family in ``slipway.api`` (Quay's error shape),
the /v2 registry in ``registry.errors`` (the OCI format). A package may refine a
kind (``registry.errors.NameInvalid`` is an ``Invalid``) so that a family can
answer it more precisely.
"""
from __future__ import annotations


class DomainError(Exception):
    """A request that cannot be done. ``detail``: optional facts about it (a name, a digest)."""

    def __init__(self, message: str, detail: dict | None = None):
        super().__init__(message)
        self.message = message
        self.detail = detail


class Invalid(DomainError):
    """The request is malformed or breaks a rule."""


class Unauthenticated(DomainError):
    """The caller must prove who it is (or its credentials are wrong)."""


class Forbidden(DomainError):
    """The caller is known and may not do this."""


class NotFound(DomainError):
    """What the request names does not exist (or is not shown to the caller)."""


class Conflict(DomainError):
    """The request collides with the current state (a name taken, the last administrator)."""


class TooLarge(DomainError):
    """The request carries more than a rule allows."""


class TooMany(DomainError):
    """Too many at once (a queue cap)."""


class LoginFailed(Exception):
    """Credentials that prove nothing (raised by the authenticator the HTTP layer is handed); the
    message is fit to show the client. Not a DomainError: each API family answers it its own way."""
