"""Who is acting: the result of authentication, passed to every permission check."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Identity:
    kind: str  # anonymous | user | robot | build
    account_id: int | None = None
    name: str = ""
    superuser: bool = False
    # How the caller proved it: password, app_token, api_token, robot_token, build_token.
    via: str = ""
    # API-token scopes (repo:read, ...); None means the account's full rights.
    scopes: frozenset | None = None
    # A build credential is confined to one repository.
    repository_id: int | None = None
    # The app/API token row id, for audit entries and revocation checks.
    token_id: int | None = None

    @property
    def anonymous(self) -> bool:
        return self.kind == "anonymous"

    def has_scope(self, scope: str) -> bool:
        return self.scopes is None or scope in self.scopes


ANONYMOUS = Identity("anonymous")
