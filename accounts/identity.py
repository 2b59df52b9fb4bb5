"""Who is acting: the result of authentication, passed to every permission check."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Identity:
    kind: str  # anonymous | user | robot | build | trigger | cli
    account_id: int | None = None
    name: str = ""
    superuser: bool = False
    # How the caller proved it: password, app_token, api_token, robot_token, build_token.
    via: str = ""
    # API-token scopes (repo:read, ...); None means the account's full rights.
    scopes: frozenset | None = None
    # A build credential is confined to these repositories (its target and its layer cache).
    repositories: tuple | None = None
    # ... and may also pull these (the base images its requester can read, for manual builds).
    read_repositories: tuple = ()
    # The app/API token row id, for audit entries and revocation checks.
    token_id: int | None = None
    # A robot's namespace (user or organization account id).
    namespace_id: int | None = None
    # The account's credential epoch when it authenticated (accounts.revocation).
    epoch: int = 0

    @property
    def anonymous(self) -> bool:
        return self.kind == "anonymous"

    def has_scope(self, scope: str) -> bool:
        return self.scopes is None or scope in self.scopes

    @property
    def is_robot(self) -> bool:
        return self.kind == "robot"

    @property
    def audit_kind(self) -> str:
        """How the audit log names this performer: user, robot, token, build or anonymous."""
        return "token" if self.via in ("app_token", "api_token") else self.kind


ANONYMOUS = Identity("anonymous")
