"""Finding and creating repositories by their full name."""
from __future__ import annotations

from peewee import IntegrityError

from accounts.identity import Identity
from accounts.models import Account
from slipway.db import database

from .errors import RegistryError
from .models import PRIVATE, Repository
from .names import split_name
from .permissions import can_create_in


def find(full_name: str) -> Repository | None:
    namespace, name = split_name(full_name)
    return (Repository.select(Repository, Account)
            .join(Account)
            .where((Account.name == namespace) & (Repository.name == name))
            .get_or_none())


def namespace_account(namespace: str) -> Account | None:
    return Account.get_or_none(Account.name == namespace)


def create(full_name: str, identity: Identity, visibility: str = PRIVATE, description: str = "") -> Repository:
    """Create a repository; the caller has already decided ``identity`` may."""
    namespace, name = split_name(full_name)
    owner = namespace_account(namespace)
    if owner is None or not owner.is_namespace:
        raise RegistryError("NAME_UNKNOWN", f"namespace {namespace} does not exist", detail={"name": full_name})
    try:
        with database.atomic():
            repo = Repository.create(namespace=owner, name=name, visibility=visibility, description=description)
    except IntegrityError:
        repo = find(full_name)
        if repo is None:
            raise
        return repo
    repo.namespace = owner
    return repo


def find_or_create_for_push(full_name: str, identity: Identity) -> Repository:
    """The repository to push into; a missing one is created private, if the pusher may create it."""
    repo = find(full_name)
    if repo is not None:
        return repo
    namespace, _ = split_name(full_name)
    if not can_create_in(identity, namespace_account(namespace)):
        raise RegistryError("DENIED", f"you may not create repositories in namespace {namespace}",
                            detail={"name": full_name})
    return create(full_name, identity)
