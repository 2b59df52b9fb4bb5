"""Errors that plain logic raises and every API family renders in its own format."""
from __future__ import annotations


class DomainError(Exception):
    """A request that cannot be done; ``status`` is the HTTP status that fits."""

    status = 400
    kind = "invalid_request"

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status


class Invalid(DomainError):
    status, kind = 400, "invalid_request"


class Unauthenticated(DomainError):
    status, kind = 401, "invalid_token"


class Forbidden(DomainError):
    status, kind = 403, "insufficient_scope"


class NotFound(DomainError):
    status, kind = 404, "not_found"


class Conflict(DomainError):
    status, kind = 409, "conflict"


class TooMany(DomainError):
    status, kind = 429, "too_many_requests"


class LoginFailed(Exception):
    """Credentials that prove nothing (raised by the authenticator the HTTP layer is handed); the
    message is fit to show the client. Not a DomainError: each API family answers it its own way."""
