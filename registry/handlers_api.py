"""/api/v1 for repositories: list, create, read, change, delete, visibility, permissions, logs (Quay's shapes)."""
from __future__ import annotations

from accounts import audit, orgs
from accounts.handlers_logs import AggregateLogsHandler, ExportLogsHandler, LogsHandler, log_routes
from accounts.models import ORG, ROBOT
from accounts.users import get_user_or_robot
from accounts.views import avatar
from slipway.api import API, ApiHandler
from slipway.errors import Invalid, NotFound

from . import permissions, repos, tags
from .models import PRIVATE, PUBLIC
from .names import COMPONENT
from .permissions import can

NAME = r"[^/]+"
# A repository path segment is never build, trigger or tag (Quay's reserved words), so a path like
# .../app/build/<id>/logs cannot be read as the logs of a repository "app/build/<id>". It follows the
# name grammar, so a path that names no repository and no route (.../manifest/sha256:.../security)
# falls through to the API's 404 instead of being read as an invalid repository name.
SEGMENT = rf"(?!(?:build|trigger|tag)(?:/|$)){COMPONENT}"
REPO_PATH = rf"{API}/repository/(?P<namespace>{NAME})/(?P<repository>(?:{SEGMENT}/)*?{SEGMENT})"
ACTION_SCOPE = {"read": "repo:read", "write": "repo:write", "admin": "repo:admin"}


class RepositoryBase(ApiHandler):
    def repository(self, action: str):
        """The repository in the path, if the caller may ``action`` (read/write/admin) it."""
        full = f"{self.path_kwargs['namespace']}/{self.path_kwargs['repository']}"
        repo = repos.lookup(full)  # a path naming no possible repository: nothing there
        if repo is None or not can(self.identity, "read", repo):
            if self.identity.anonymous:  # the same answer whether it is private or missing
                raise self.deny()
            raise NotFound(f"Repository {full} does not exist")
        self.require_scope(ACTION_SCOPE[action])
        if not can(self.identity, action, repo):
            raise self.deny(f"You need the {action} role on {full}")
        return repo


def repository_summary(repo) -> dict:
    return {"namespace": repo.namespace.name, "name": repo.name, "description": repo.description,
            "is_public": repo.visibility == PUBLIC, "kind": "image", "state": repo.state.upper(),
            "is_starred": False}


class RepositoryListHandler(ApiHandler):
    scopes = {"post": "repo:create"}
    schemas = {"post": {"type": "object", "required": ["repository", "visibility"], "properties": {
        "repository": {"type": "string"}, "namespace": {"type": "string"},
        "visibility": {"enum": [PUBLIC, PRIVATE]}, "description": {"type": "string"},
        "repo_kind": {"enum": ["image"]}}}}

    async def get(self) -> None:
        """Repositories the caller can see (?namespace=, ?public=true adds every public one)."""
        namespace = self.get_argument("namespace", None)
        names = permissions.visible_repositories(self.identity, self.get_argument("next_page", ""), 101, namespace)
        rows = repos.by_names(names[:100])
        body = {"repositories": [repository_summary(rows[n]) for n in names[:100] if n in rows]}
        if len(names) > 100:
            body["next_page"] = names[99]
        self.send(body)

    async def post(self) -> None:
        """Create a repository."""
        identity = self.require_login()
        body = self.json_body()
        namespace = body.get("namespace") or identity.name
        repo = repos.create_repository(namespace, body["repository"], identity, body["visibility"],
                                       body.get("description", ""), self.client_ip)
        self.send({"namespace": namespace, "name": repo.name, "kind": "image"}, 201)


class RepositoryHandler(RepositoryBase):
    schemas = {"put": {"type": "object", "required": ["description"],
                       "properties": {"description": {"type": "string"}}}}

    async def get(self, namespace: str, repository: str) -> None:
        """A repository, with what the caller may do to it."""
        repo = self.repository("read")
        alive = {tag.name: {"name": tag.name, "manifest_digest": tag.manifest.digest,
                            "last_modified": audit.quay_date(tag.lifetime_start)} for tag in tags.alive_tags(repo, 100)}
        self.send({**repository_summary(repo), "is_organization": repo.namespace.kind == ORG,
                   "can_write": can(self.identity, "write", repo), "can_admin": can(self.identity, "admin", repo),
                   "tag_expiration_s": repo.namespace.time_machine_s, "status_token": "", "trust_enabled": False,
                   "is_free_account": True, "tags": alive})

    async def put(self, namespace: str, repository: str) -> None:
        """Change a repository's description."""
        repo = self.repository("admin")
        repos.set_description(repo, self.json_body()["description"], self.identity, self.client_ip)
        self.send({"success": True})

    async def delete(self, namespace: str, repository: str) -> None:
        """Delete a repository and everything in it."""
        repo = self.repository("admin")
        repos.delete(repo, self.identity, self.client_ip)
        self.send(None, 204)


class VisibilityHandler(RepositoryBase):
    schemas = {"post": {"type": "object", "required": ["visibility"],
                        "properties": {"visibility": {"enum": [PUBLIC, PRIVATE]}}}}

    async def post(self, namespace: str, repository: str) -> None:
        """Make a repository public or private."""
        repo = self.repository("admin")
        repos.set_visibility(repo, self.json_body()["visibility"], self.identity, self.client_ip)
        self.send({"success": True})


def user_permission_view(account, role: str, repo) -> dict:
    return {"role": role, "name": account.name, "is_robot": account.kind == ROBOT,
            "avatar": avatar(account.name, "robot" if account.kind == ROBOT else "user"),
            "is_org_member": permissions.in_organization(account, repo)}


ROLE_BODY = {"type": "object", "required": ["role"], "properties": {"role": {"enum": list(permissions.ROLES)}}}


class UserPermissionsHandler(RepositoryBase):
    async def get(self, namespace: str, repository: str) -> None:
        """Roles granted directly to users and robots."""
        repo = self.repository("admin")
        self.send({"permissions": {a.name: user_permission_view(a, role, repo)
                                   for a, role in permissions.user_grants(repo)}})


class UserPermissionHandler(RepositoryBase):
    schemas = {"put": ROLE_BODY}

    async def get(self, namespace: str, repository: str, username: str) -> None:
        """One user's or robot's direct role."""
        repo = self.repository("admin")
        for account, role in permissions.user_grants(repo):
            if account.name == username:
                self.send(user_permission_view(account, role, repo))
                return
        raise NotFound(f"'{username}' has no permission on {repo.full_name}")

    async def put(self, namespace: str, repository: str, username: str) -> None:
        """Grant a user or robot a role (read, write, admin)."""
        repo = self.repository("admin")
        account = get_user_or_robot(username)
        role = self.json_body()["role"]
        permissions.set_account_role(repo, account, role, self.identity, self.client_ip)
        self.send(user_permission_view(account, role, repo))

    async def delete(self, namespace: str, repository: str, username: str) -> None:
        """Remove a user's or robot's direct role."""
        repo = self.repository("admin")
        permissions.remove_account_role(repo, get_user_or_robot(username), self.identity, self.client_ip)
        self.send(None, 204)


def team_permission_view(team, role: str) -> dict:
    return {"role": role, "name": team.name, "avatar": avatar(team.name, "team")}


class TeamPermissionsHandler(RepositoryBase):
    async def get(self, namespace: str, repository: str) -> None:
        """Roles granted to teams."""
        repo = self.repository("admin")
        self.send({"permissions": {t.name: team_permission_view(t, role) for t, role in permissions.team_grants(repo)}})


class TeamPermissionHandler(RepositoryBase):
    schemas = {"put": ROLE_BODY}

    def team(self, repo, teamname: str):
        if repo.namespace.kind != ORG:
            raise Invalid(f"{repo.full_name} is in a user namespace, which has no teams")
        return orgs.get_team(repo.namespace, teamname)

    async def get(self, namespace: str, repository: str, teamname: str) -> None:
        """One team's role."""
        repo = self.repository("admin")
        for team, role in permissions.team_grants(repo):
            if team.name == teamname:
                self.send(team_permission_view(team, role))
                return
        raise NotFound(f"Team '{teamname}' has no permission on {repo.full_name}")

    async def put(self, namespace: str, repository: str, teamname: str) -> None:
        """Grant a team a role (read, write, admin)."""
        repo = self.repository("admin")
        team = self.team(repo, teamname)
        role = self.json_body()["role"]
        permissions.set_team_role(repo, team, role, self.identity, self.client_ip)
        self.send(team_permission_view(team, role))

    async def delete(self, namespace: str, repository: str, teamname: str) -> None:
        """Remove a team's role."""
        repo = self.repository("admin")
        permissions.remove_team_role(repo, self.team(repo, teamname), self.identity, self.client_ip)
        self.send(None, 204)


class RepositoryLogs(RepositoryBase):
    """Whose logs: the repository's (its administrators read them)."""

    def log_scope(self) -> dict:
        repo = self.repository("admin")
        return {"repository_id": repo.id, "since": repo.created_at}


class RepositoryLogsHandler(RepositoryLogs, LogsHandler):
    pass


class RepositoryAggregateLogsHandler(RepositoryLogs, AggregateLogsHandler):
    pass


class RepositoryExportLogsHandler(RepositoryLogs, ExportLogsHandler):
    pass


default_handlers = [
    (rf"{API}/repository/?", RepositoryListHandler),
    (rf"{REPO_PATH}/changevisibility", VisibilityHandler),
    (rf"{REPO_PATH}/permissions/user/?", UserPermissionsHandler),
    (rf"{REPO_PATH}/permissions/user/(?P<username>{NAME})", UserPermissionHandler),
    (rf"{REPO_PATH}/permissions/team/?", TeamPermissionsHandler),
    (rf"{REPO_PATH}/permissions/team/(?P<teamname>{NAME})", TeamPermissionHandler),
] + log_routes(REPO_PATH, RepositoryLogsHandler, RepositoryAggregateLogsHandler, RepositoryExportLogsHandler)
# Last of all routes: its path would also match the deeper paths of other packages.
fallback_handlers = [(rf"{REPO_PATH}/?", RepositoryHandler)]
