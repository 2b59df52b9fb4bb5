"""Token grants: which of the requested actions an identity gets (the Docker token spec's downscoping)."""
from __future__ import annotations

from accounts.identity import Identity

from . import repos
from .errors import RegistryError
from .names import split_name
from accounts.permissions import can_create_in

from .permissions import can
from .tokens import Scope

REPOSITORY_ACTIONS = ("pull", "push", "delete", "*")


def grant(identity: Identity, requested: list[Scope]) -> list[Scope]:
    """The granted subset of each requested scope; a scope granting nothing is still listed, empty."""
    granted = []
    for scope in requested:
        if scope.type == "repository":
            granted.append(Scope("repository", scope.name, _repository_actions(identity, scope)))
        elif scope.type == "registry" and scope.name == "catalog":
            # The catalog is filtered to what the caller may see, so anyone may ask.
            granted.append(Scope("registry", "catalog", tuple(a for a in scope.actions if a == "*")))
    return granted


def _repository_actions(identity: Identity, scope: Scope) -> tuple:
    wanted = [a for a in scope.actions if a in REPOSITORY_ACTIONS]
    try:
        namespace, _ = split_name(scope.name)
    except RegistryError:
        return ()
    repo = repos.find(scope.name)
    if repo is not None:
        return tuple(a for a in wanted if can(identity, a, repo))
    # A missing repository: whoever may create it may push (creating it) and pull (finding nothing).
    if can_create_in(identity, repos.namespace_account(namespace)):
        return tuple(wanted)
    return ()
