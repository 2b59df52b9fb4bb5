"""Repositories: finding, creating (with the organization's default permissions), settings, deletion."""
from __future__ import annotations

from peewee import IntegrityError, fn

from accounts import audit, revocation
from accounts.identity import Identity
from accounts.models import ORG, USER, Account, Prototype
from accounts.permissions import can_create_in
from slipway import events
from slipway.db import database
from slipway.errors import Forbidden, Invalid, NotFound

from .errors import Denied, NameInvalid, NameUnknown
from .models import PRIVATE, PUBLIC, Manifest, Repository, RepositoryPermission, Tag
from .names import split_name

# <repository>/buildcache: the builder's layer cache for <repository>; nobody else may create one.
CACHE_SEGMENT = "buildcache"


def find(full_name: str) -> Repository | None:
    namespace, name = split_name(full_name)
    return (Repository.select(Repository, Account)
            .join(Account)
            .where((Account.name == namespace) & (Repository.name == name))
            .get_or_none())


def lookup(full_name: str) -> Repository | None:
    """``find`` for a name read from an API path: a name no repository can have is not found (nothing is
    there, whoever asks), rather than invalid."""
    try:
        return find(full_name)
    except NameInvalid as e:
        raise NotFound(e.message, e.detail) from None


def by_names(names: list[str]) -> dict[str, Repository]:
    """The repositories of these full names, by full name (names of no repository are left out)."""
    if not names:
        return {}
    return {r.full_name: r for r in Repository.select(Repository, Account).join(Account).where(
        Account.name.concat("/").concat(Repository.name).in_(names))}


def last_pushed(repository_ids: list[int]) -> dict[int, int]:
    """When a tag was last pushed or moved in each repository (ms), for those with any tag."""
    if not repository_ids:
        return {}
    rows = (Tag.select(Tag.repository, fn.MAX(Tag.lifetime_start).alias("last"))
            .where(Tag.repository.in_(repository_ids)).group_by(Tag.repository).tuples())
    return {repo_id: last for repo_id, last in rows}


def namespace_account(namespace: str) -> Account | None:
    return Account.get_or_none((Account.name == namespace) & (Account.kind.in_([USER, ORG])))


def create(full_name: str, identity: Identity, visibility: str = PRIVATE, description: str = "",
           ip: str | None = None) -> tuple[Repository, bool]:
    """Create a repository (the caller decided ``identity`` may); returns it and whether it is new.

    In an organization the creator (user or robot) gets admin on the new repository, as in
    Quay, and the default permissions (prototypes) that match the creator are applied.
    """
    namespace, name = split_name(full_name)
    if name.rsplit("/", 1)[-1] == CACHE_SEGMENT and identity.kind != "build":
        raise Denied(f"'{CACHE_SEGMENT}' repositories hold build layer caches and are made by the builder only",
                     detail={"name": full_name})
    owner = namespace_account(namespace)
    if owner is None:
        raise NameUnknown(f"namespace {namespace} does not exist", detail={"name": full_name})
    try:
        with database.atomic():
            repo = Repository.create(namespace=owner, name=name, visibility=visibility, description=description)
            repo.namespace = owner
            _apply_prototypes(repo, identity)
            audit.record("create_repo", identity, namespace=owner, repository=repo, ip=ip,
                         metadata={"repo": name, "namespace": namespace, "visibility": visibility})
    except IntegrityError:
        existing = find(full_name)
        if existing is None:
            raise
        return existing, False
    return repo, True


def _apply_prototypes(repo: Repository, creator: Identity) -> None:
    if repo.namespace.kind != ORG:
        return
    if creator.account_id is not None and creator.repositories is None and not creator.superuser:
        RepositoryPermission.create(repository=repo, account=creator.account_id, role="admin")
    prototypes = Prototype.select().where(
        (Prototype.org == repo.namespace.id)
        & (Prototype.activating_user.is_null() | (Prototype.activating_user == creator.account_id)))
    for proto in prototypes:
        RepositoryPermission.create(repository=repo, account=proto.delegate_account_id, team=proto.delegate_team_id,
                                    role=proto.role)


def create_repository(namespace: str, name: str, identity: Identity, visibility: str = PRIVATE,
                      description: str = "", ip: str | None = None) -> Repository:
    """A new repository through the API: refused if the caller may not create in ``namespace``, then if it
    exists (in that order: who may not create there must not learn which private repositories it holds)."""
    full = f"{namespace}/{name}"
    owner = namespace_account(namespace)
    if not can_create_in(identity, owner):
        if owner is None:
            raise NotFound(f"Namespace '{namespace}' does not exist")
        raise Forbidden(f"You may not create repositories in namespace '{namespace}'")
    if find(full) is not None:
        raise Invalid(f"Repository {full} already exists")
    return create(full, identity, visibility, description, ip)[0]


def find_or_create_for_push(full_name: str, identity: Identity, ip: str | None = None) -> Repository:
    """The repository to push into; a missing one is created private, if the pusher may create it.
    A read-only repository takes no pushes."""
    repo = find(full_name)
    if repo is None:
        namespace, _ = split_name(full_name)
        if not can_create_in(identity, namespace_account(namespace)):
            raise Denied(f"you may not create repositories in namespace {namespace}", detail={"name": full_name})
        return create(full_name, identity, ip=ip)[0]
    if repo.state == "read_only":
        raise Denied(f"repository {full_name} is read-only")
    return repo


def set_visibility(repo: Repository, visibility: str, performer: Identity, ip: str | None = None) -> None:
    if visibility not in (PUBLIC, PRIVATE):
        raise Invalid(f"Invalid visibility '{visibility}': use public or private")
    with database.atomic():
        Repository.update(visibility=visibility).where(Repository.id == repo.id).execute()
        if visibility == PRIVATE:
            revocation.bump()
        audit.record("change_repo_visibility", performer, namespace=repo.namespace, repository=repo, ip=ip,
                     metadata={"visibility": visibility})
    repo.visibility = visibility


def set_description(repo: Repository, description: str, performer: Identity, ip: str | None = None) -> None:
    with database.atomic():
        Repository.update(description=description).where(Repository.id == repo.id).execute()
        audit.record("set_repo_description", performer, namespace=repo.namespace, repository=repo, ip=ip,
                     metadata={"description": description})


def delete(repo: Repository, performer: Identity, ip: str | None = None) -> None:
    """Delete a repository and everything in it; unreferenced blobs are freed by garbage collection."""
    with database.atomic():
        audit.record("delete_repo", performer, namespace=repo.namespace, repository=repo, ip=ip,
                     metadata={"repo": repo.name, "namespace": repo.namespace.name})
        digests = [m.digest for m in Manifest.select(Manifest.digest).where(Manifest.repository == repo)]
        repo.delete_instance()
        for start in range(0, len(digests), 500):  # its manifests go with it, as garbage collection's do
            events.emit(events.MANIFESTS_COLLECTED, None,
                        {"manifests": [[repo.id, d] for d in digests[start:start + 500]]})
        revocation.bump()
