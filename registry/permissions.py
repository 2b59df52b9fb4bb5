"""The one permission check: what an identity may do to a repository, and the grants behind it.

Repository roles are ``read`` (pull, view), ``write`` (read + push, delete tags)
and ``admin`` (write + settings, permissions, delete the repository). A role
comes from owning the namespace, an admin team of the organization, a direct
grant to the user or robot, a grant to one of its teams, or public visibility.
Scoped API tokens are capped by their scopes.
"""
from __future__ import annotations

from peewee import Value, fn

from accounts import audit, revocation
from accounts.identity import Identity
from accounts.models import ORG, ROBOT, USER, Account, Team, TeamMember
from slipway.db import database, is_postgres
from slipway.errors import Invalid, NotFound

from .models import PUBLIC, Repository, RepositoryPermission
from .names import split_name
from .repos import find

ROLES = ("read", "write", "admin")
RANK = {None: 0, "read": 1, "write": 2, "admin": 3}
# The role each action needs. Registry actions (pull, push, delete, *) and API actions share it.
NEEDS = {"pull": "read", "read": "read", "push": "write", "write": "write", "delete": "write", "*": "write",
         "admin": "admin"}
SCOPE_CAP = (("repo:admin", "admin"), ("repo:write", "write"), ("repo:read", "read"))


def best(*roles: str | None) -> str | None:
    return max(roles, key=RANK.__getitem__)


# -- where a role comes from: defined once, applied to one repository (``_granted_role``) and as a
# subquery over all of them (``_readable_ids``) ---------------------------------------------------------

def _reach(identity: Identity) -> int | None:
    """The one namespace a robot's roles are confined to (None: no such limit)."""
    return identity.namespace_id if identity.is_robot else None


def _owned_namespace(identity: Identity) -> int | None:
    """The namespace ``identity`` owns outright, with admin on all of it (a user's own)."""
    return identity.account_id if identity.kind == USER else None


def _admin_orgs(identity: Identity):
    """Organizations where ``identity`` is in an admin team (admin on every repository in them)."""
    return (Team.select(Team.org).join(TeamMember)
            .where((TeamMember.account == identity.account_id) & (Team.role == "admin")))


def _holds_grant(identity: Identity):
    """The ``repository_permission`` rows held by ``identity``: its own grants and its teams'."""
    teams = TeamMember.select(TeamMember.team).where(TeamMember.account == identity.account_id)
    return (RepositoryPermission.account == identity.account_id) | RepositoryPermission.team.in_(teams)


def _granted_role(identity: Identity, repo: Repository) -> str | None:
    """The strongest role from grants, ignoring visibility and token scopes."""
    if identity.repositories is not None:  # a build credential: its repositories only
        if repo.id in identity.repositories:
            return "write"
        return "read" if repo.id in identity.read_repositories else None
    if identity.superuser:
        return "admin"
    reach = _reach(identity)
    if reach is not None and repo.namespace_id != reach:
        return None  # a robot never reaches beyond its own namespace
    if repo.namespace_id == _owned_namespace(identity):
        return "admin"
    admin = _admin_orgs(identity).where(Team.org == repo.namespace_id).select(Value("admin"))
    grants = RepositoryPermission.select(RepositoryPermission.role).where(
        (RepositoryPermission.repository == repo.id) & _holds_grant(identity))
    return best(None, *(role for (role,) in (admin + grants).tuples()))


def repository_role(identity: Identity, repo: Repository) -> str | None:
    """The strongest role ``identity`` holds on ``repo`` (None: no access)."""
    public = "read" if repo.visibility == PUBLIC else None
    if identity.anonymous:
        return public
    role = best(_granted_role(identity, repo), public)
    if identity.scopes is not None:
        cap = next((r for scope, r in SCOPE_CAP if scope in identity.scopes), None)
        role = role if RANK[role] <= RANK[cap] else cap
    return role


def can(identity: Identity, action: str, repo: Repository) -> bool:
    needed = NEEDS[action]
    if needed == "write" and repo.state == "read_only":
        return False
    return RANK[repository_role(identity, repo)] >= RANK[needed]


def visible_repositories(identity: Identity, after: str, limit: int | None, namespace: str | None = None,
                         search: str = "") -> list[str]:
    """Full names of the repositories ``identity`` may read, sorted, after ``after`` (catalog and API lists;
    the web interface's list also gives ``search``, a part of the full name)."""
    full_name = Account.name.concat("/").concat(Repository.name)
    if is_postgres():  # lexical (byte) order, as the catalog promises, whatever the database's locale
        full_name = full_name.collate('"C"')
    query = Repository.select(full_name.alias("full")).join(Account, on=(Repository.namespace == Account.id))
    may_read = identity.has_scope("repo:read")  # a token without repo:read sees public repositories only
    if not (identity.superuser and may_read):
        readable = Repository.visibility == PUBLIC
        if may_read and identity.repositories is not None:
            readable |= Repository.id.in_(list(identity.repositories))
        elif may_read and not identity.anonymous:
            readable |= Repository.id.in_(_readable_ids(identity))
        query = query.where(readable)
    if namespace:
        query = query.where(Account.name == namespace)
    if search:
        query = query.where(fn.STRPOS(full_name, search) > 0 if is_postgres() else fn.INSTR(full_name, search) > 0)
    if after:
        query = query.where(full_name > after)
    query = query.order_by(full_name)
    if limit is not None:
        query = query.limit(limit)
    return [row.full for row in query.objects()]


def _readable_ids(identity: Identity):
    """A subquery of repository ids ``identity`` holds any role on (scopes aside): ``_granted_role``'s rules."""
    granted = RepositoryPermission.select(RepositoryPermission.repository).where(_holds_grant(identity))
    readable = Repository.id.in_(granted) | Repository.namespace.in_(_admin_orgs(identity))
    owned = _owned_namespace(identity)
    if owned is not None:
        readable |= Repository.namespace == owned
    reach = _reach(identity)
    if reach is not None:
        readable &= Repository.namespace == reach
    return Repository.select(Repository.id).where(readable)


# -- grants ---------------------------------------------------------------------------------------------

def _check_role(role: str) -> None:
    if role not in ROLES:
        raise Invalid(f"Invalid role '{role}': use one of {', '.join(ROLES)}")


def user_grants(repo: Repository) -> list[tuple[Account, str]]:
    rows = (RepositoryPermission.select(RepositoryPermission, Account).join(Account)
            .where(RepositoryPermission.repository == repo.id).order_by(Account.name))
    return [(r.account, r.role) for r in rows]


def team_grants(repo: Repository) -> list[tuple[Team, str]]:
    rows = (RepositoryPermission.select(RepositoryPermission, Team).join(Team)
            .where(RepositoryPermission.repository == repo.id).order_by(Team.name))
    return [(r.team, r.role) for r in rows]


def set_account_role(repo: Repository, account: Account, role: str, performer: Identity,
                     ip: str | None = None) -> None:
    """Grant a user or robot ``role`` on ``repo`` (replacing any earlier grant)."""
    _check_role(role)
    if account.kind not in (USER, ROBOT):
        raise Invalid(f"'{account.name}' is an organization: grant roles to its teams instead")
    if account.kind == ROBOT and account.owner_id != repo.namespace_id:
        raise Invalid(f"Robot '{account.name}' belongs to another namespace and cannot be given access to "
                      f"{repo.full_name}")
    with database.atomic():
        RepositoryPermission.delete().where((RepositoryPermission.repository == repo.id)
                                            & (RepositoryPermission.account == account.id)).execute()
        RepositoryPermission.create(repository=repo, account=account, role=role)
        revocation.bump()  # a lower role takes rights away
        audit.record("change_repo_permission", performer, namespace=repo.namespace, repository=repo, ip=ip,
                     metadata={"username": account.name, "role": role, "is_robot": account.kind == ROBOT})


def set_team_role(repo: Repository, team: Team, role: str, performer: Identity, ip: str | None = None) -> None:
    _check_role(role)
    if team.org_id != repo.namespace_id:
        raise Invalid(f"Team '{team.name}' is not in namespace {repo.namespace.name}")
    with database.atomic():
        RepositoryPermission.delete().where((RepositoryPermission.repository == repo.id)
                                            & (RepositoryPermission.team == team.id)).execute()
        RepositoryPermission.create(repository=repo, team=team, role=role)
        revocation.bump()
        audit.record("change_repo_permission", performer, namespace=repo.namespace, repository=repo, ip=ip,
                     metadata={"team": team.name, "role": role})


def remove_account_role(repo: Repository, account: Account, performer: Identity, ip: str | None = None) -> None:
    with database.atomic():
        deleted = RepositoryPermission.delete().where((RepositoryPermission.repository == repo.id)
                                                      & (RepositoryPermission.account == account.id)).execute()
        if not deleted:
            raise NotFound(f"'{account.name}' has no permission on {repo.full_name}")
        revocation.bump()
        audit.record("delete_repo_permission", performer, namespace=repo.namespace, repository=repo, ip=ip,
                     metadata={"username": account.name, "is_robot": account.kind == ROBOT})


def remove_team_role(repo: Repository, team: Team, performer: Identity, ip: str | None = None) -> None:
    with database.atomic():
        deleted = RepositoryPermission.delete().where((RepositoryPermission.repository == repo.id)
                                                      & (RepositoryPermission.team == team.id)).execute()
        if not deleted:
            raise NotFound(f"Team '{team.name}' has no permission on {repo.full_name}")
        revocation.bump()
        audit.record("delete_repo_permission", performer, namespace=repo.namespace, repository=repo, ip=ip,
                     metadata={"team": team.name})


def grants_of(account_or_team) -> list[tuple[Repository, str]]:
    """Every repository grant held by a user, robot or team."""
    field = RepositoryPermission.team if isinstance(account_or_team, Team) else RepositoryPermission.account
    rows = (RepositoryPermission.select(RepositoryPermission, Repository, Account)
            .join(Repository).join(Account, on=(Repository.namespace == Account.id))
            .where(field == account_or_team.id).order_by(Repository.name))
    return [(r.repository, r.role) for r in rows]


def set_roles(account: Account, namespace: Account, wanted: list[tuple[str, str]], performer: Identity,
              ip: str | None = None) -> None:
    """Set ``account``'s role on many repositories of ``namespace`` at once (``"none"`` removes it), all or
    nothing. ``wanted``: (repository name, full or within the namespace; role)."""
    resolved = []
    for name, role in wanted:
        full = name if "/" in name else f"{namespace.name}/{name}"
        if split_name(full)[0] != namespace.name:
            raise Invalid(f"Repository {full} is outside namespace {namespace.name}")
        repo = find(full)
        if repo is None:
            raise NotFound(f"Repository {full} does not exist")
        resolved.append((repo, role))
    with database.atomic():
        current = {repo.id for repo, _ in grants_of(account)}
        for repo, role in resolved:
            if role == "none":
                if repo.id in current:
                    remove_account_role(repo, account, performer, ip)
            else:
                set_account_role(repo, account, role, performer, ip)


def collaborators(org: Account) -> list[tuple[Account, list[str]]]:
    """Users with direct grants on the organization's repositories who are in none of its teams, by name,
    each with the names of those repositories."""
    in_teams = TeamMember.select(TeamMember.account).join(Team).where(Team.org == org.id)
    rows = (RepositoryPermission.select(RepositoryPermission, Account, Repository)
            .join(Account, on=(RepositoryPermission.account == Account.id))
            .switch(RepositoryPermission).join(Repository)
            .where((Repository.namespace == org.id) & (Account.kind == USER) & ~(Account.id.in_(in_teams)))
            .order_by(Account.name, Repository.name))
    found: dict[int, tuple[Account, list[str]]] = {}
    for row in rows:
        found.setdefault(row.account.id, (row.account, []))[1].append(row.repository.name)
    return list(found.values())


def in_organization(account: Account, repo: Repository) -> bool:
    """Whether ``account`` is in one of the teams of the organization that holds ``repo``."""
    if repo.namespace.kind != ORG:
        return False
    return (TeamMember.select().join(Team)
            .where((Team.org == repo.namespace_id) & (TeamMember.account == account.id)).exists())
