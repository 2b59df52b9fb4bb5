"""/api/v1 for robot accounts, in organizations and in a user's own namespace (Quay's paths and shapes)."""
from __future__ import annotations

from registry import permissions as repo_permissions
from registry import repos
from registry.names import split_name
from slipway.api import API, ApiHandler
from slipway.db import database
from slipway.errors import Invalid, NotFound

from . import orgs, robots, views
from .models import Account, Team, TeamMember
from .permissions import is_namespace_admin

NAME = r"[^/]+"


class RobotBase(ApiHandler):
    """Resolves the namespace from the path: /organization/{orgname}/robots or /user/robots."""

    def namespace(self) -> Account:
        orgname = self.path_kwargs.get("orgname")
        if orgname:
            namespace = orgs.get_org(orgname)
            self.require_scope("org:admin")
        else:
            self.require_login()
            self.require_scope("user:admin")
            if self.identity.is_robot:
                raise self.deny("Robots cannot manage robots")
            namespace = Account.get_by_id(self.identity.account_id)
        if not is_namespace_admin(self.identity, namespace):
            raise self.deny(f"You must administer namespace '{namespace.name}' to manage its robots")
        return namespace

    def robot(self) -> tuple[Account, Account]:
        namespace = self.namespace()
        return namespace, robots.get_robot(namespace, self.path_kwargs["robot_shortname"])


class RobotListHandler(RobotBase):
    async def get(self, orgname: str | None = None) -> None:
        """The namespace's robots (?token=false hides tokens, ?permissions=true adds grants)."""
        namespace = self.namespace()
        with_token = self.get_query_argument("token", "true") != "false"
        with_permissions = self.get_query_argument("permissions", "false") == "true"
        result = []
        for robot in robots.list_robots(namespace):
            view = views.robot(robot, robots.robot_token(robot) if with_token else None)
            if with_permissions:
                view["repositories"] = [r.name for r, _ in repo_permissions.grants_of(robot)]
                view["teams"] = [{"name": t.name, "avatar": views.avatar(t.name, "team")}
                                 for t in _robot_teams(robot)]
            result.append(view)
        self.send({"robots": result})


def _robot_teams(robot: Account):
    return Team.select().join(TeamMember).where(TeamMember.account == robot.id).order_by(Team.name)


class RobotHandler(RobotBase):
    schemas = {"put": {"type": "object", "additionalProperties": False,
                       "properties": {"description": {"type": "string"},
                                      "unstructured_metadata": {"type": "object"}}}}

    async def get(self, robot_shortname: str, orgname: str | None = None) -> None:
        """A robot, with its token."""
        _, robot = self.robot()
        self.send(views.robot(robot, robots.robot_token(robot)))

    async def put(self, robot_shortname: str, orgname: str | None = None) -> None:
        """Create a robot; its token is in the answer."""
        robots.check_enabled(self.config.auth.robots_enabled)
        namespace = self.namespace()
        body = self.json_body()
        robot, token = robots.create_robot(namespace, robot_shortname, body.get("description", ""), self.identity,
                                           self.client_ip)
        self.send(views.robot(robot, token), 201)

    async def delete(self, robot_shortname: str, orgname: str | None = None) -> None:
        """Delete a robot."""
        _, robot = self.robot()
        robots.delete_robot(robot, self.identity, self.client_ip)
        self.send(None, 204)


class RobotRegenerateHandler(RobotBase):
    async def post(self, robot_shortname: str, orgname: str | None = None) -> None:
        """Replace a robot's token; the old one stops working at once."""
        _, robot = self.robot()
        token = robots.regenerate(robot, self.identity, self.client_ip)
        self.send(views.robot(Account.get_by_id(robot.id), token))


class RobotPermissionsHandler(RobotBase):
    schemas = {"put": {"type": "object", "required": ["permissions"], "properties": {"permissions": {
        "type": "array", "items": {"type": "object", "required": ["repository", "role"], "properties": {
            "repository": {"type": "string"}, "role": {"enum": ["read", "write", "admin", "none"]}}}}}}}

    async def get(self, robot_shortname: str, orgname: str | None = None) -> None:
        """The repository permissions a robot holds."""
        _, robot = self.robot()
        self.send({"permissions": [views.repo_ref(repo, role) for repo, role in repo_permissions.grants_of(robot)]})

    async def put(self, robot_shortname: str, orgname: str | None = None) -> None:
        """Set a robot's role on many repositories at once ("none" removes it); all or nothing."""
        namespace, robot = self.robot()
        wanted = []
        for entry in self.json_body()["permissions"]:
            full = entry["repository"] if "/" in entry["repository"] else f"{namespace.name}/{entry['repository']}"
            if split_name(full)[0] != namespace.name:
                raise Invalid(f"Repository {full} is outside namespace {namespace.name}")
            repo = repos.find(full)
            if repo is None:
                raise NotFound(f"Repository {full} does not exist")
            wanted.append((repo, entry["role"]))
        with database.atomic():
            current = {repo.id for repo, _ in repo_permissions.grants_of(robot)}
            for repo, role in wanted:
                if role == "none":
                    if repo.id in current:
                        repo_permissions.remove_account_role(repo, robot, self.identity, self.client_ip)
                else:
                    repo_permissions.set_account_role(repo, robot, role, self.identity, self.client_ip)
        self.send({"permissions": [views.repo_ref(repo, role) for repo, role in repo_permissions.grants_of(robot)]})


class RobotCredentialsHandler(RobotBase):
    async def get(self, robot_shortname: str, orgname: str | None = None) -> None:
        """A robot's credentials as a file: ?format=docker-login|podman-login|docker-config|kubernetes."""
        _, robot = self.robot()
        host = self.base_url().split("://", 1)[1]
        content, media_type, filename = robots.credentials(robot, host, self.get_query_argument("format", ""))
        self.set_header("Content-Type", media_type)
        self.set_header("Content-Disposition", f'attachment; filename="{filename}"')
        self.finish(content)


def _routes(prefix: str) -> list:
    robot = rf"{prefix}/robots/(?P<robot_shortname>{NAME})"
    return [
        (rf"{prefix}/robots/?", RobotListHandler),
        (robot, RobotHandler),
        (rf"{robot}/regenerate", RobotRegenerateHandler),
        (rf"{robot}/permissions", RobotPermissionsHandler),
        (rf"{robot}/credentials", RobotCredentialsHandler),
    ]


default_handlers = _routes(rf"{API}/organization/(?P<orgname>{NAME})") + _routes(rf"{API}/user")
