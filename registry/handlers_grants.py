"""/api/v1 answers about who holds which repository permissions, on accounts' paths: an organization's
collaborators, a team's and a robot's repository permissions, and the robot list with their grants
(Quay's paths and shapes). They live here because they know repositories; accounts does not."""
from __future__ import annotations

from accounts import orgs, views
from accounts.handlers import ORG_PATH, OrgAdminHandler
from accounts.handlers_robots import NAME, RobotBase
from accounts.models import USER, Account, Team, TeamMember
from accounts.robots import list_robots, robot_token
from slipway.api import API
from slipway.db import database
from slipway.errors import Invalid, NotFound

from . import repos
from .models import Repository, RepositoryPermission
from .names import split_name
from .permissions import grants_of, remove_account_role, set_account_role


class CollaboratorsHandler(OrgAdminHandler):
    async def get(self, orgname: str) -> None:
        """Users with direct repository permissions in the organization who are in none of its teams."""
        org = self.org_as_admin(orgname)
        in_teams = TeamMember.select(TeamMember.account).join(Team).where(Team.org == org.id)
        rows = (RepositoryPermission.select(RepositoryPermission, Account, Repository)
                .join(Account, on=(RepositoryPermission.account == Account.id))
                .switch(RepositoryPermission).join(Repository)
                .where((Repository.namespace == org.id) & (Account.kind == USER) & ~(Account.id.in_(in_teams)))
                .order_by(Account.name, Repository.name))
        found: dict[str, dict] = {}
        for row in rows:
            entry = found.setdefault(row.account.name, {**views.entity(row.account), "repositories": []})
            entry["repositories"].append(row.repository.name)
        self.send({"collaborators": list(found.values())})


class TeamPermissionsHandler(OrgAdminHandler):
    async def get(self, orgname: str, teamname: str) -> None:
        """The repository permissions a team holds."""
        org = self.org_as_admin(orgname)
        team = orgs.get_team(org, teamname)
        self.send({"permissions": [views.repo_ref(repo, role) for repo, role in grants_of(team)]})


class RobotListHandler(RobotBase):
    async def get(self, orgname: str | None = None) -> None:
        """The namespace's robots (?token=false hides tokens, ?permissions=true adds grants)."""
        namespace = self.namespace()
        with_token = self.get_query_argument("token", "true") != "false"
        with_permissions = self.get_query_argument("permissions", "false") == "true"
        result = []
        for robot in list_robots(namespace):
            view = views.robot(robot, robot_token(robot) if with_token else None)
            if with_permissions:
                view["repositories"] = [r.name for r, _ in grants_of(robot)]
                view["teams"] = [{"name": t.name, "avatar": views.avatar(t.name, "team")}
                                 for t in _robot_teams(robot)]
            result.append(view)
        self.send({"robots": result})


def _robot_teams(robot: Account):
    return Team.select().join(TeamMember).where(TeamMember.account == robot.id).order_by(Team.name)


class RobotPermissionsHandler(RobotBase):
    schemas = {"put": {"type": "object", "required": ["permissions"], "properties": {"permissions": {
        "type": "array", "items": {"type": "object", "required": ["repository", "role"], "properties": {
            "repository": {"type": "string"}, "role": {"enum": ["read", "write", "admin", "none"]}}}}}}}

    async def get(self, robot_shortname: str, orgname: str | None = None) -> None:
        """The repository permissions a robot holds."""
        _, robot = self.robot()
        self.send({"permissions": [views.repo_ref(repo, role) for repo, role in grants_of(robot)]})

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
            current = {repo.id for repo, _ in grants_of(robot)}
            for repo, role in wanted:
                if role == "none":
                    if repo.id in current:
                        remove_account_role(repo, robot, self.identity, self.client_ip)
                else:
                    set_account_role(repo, robot, role, self.identity, self.client_ip)
        self.send({"permissions": [views.repo_ref(repo, role) for repo, role in grants_of(robot)]})


def _robot_routes(prefix: str) -> list:
    return [
        (rf"{prefix}/robots/?", RobotListHandler),
        (rf"{prefix}/robots/(?P<robot_shortname>{NAME})/permissions", RobotPermissionsHandler),
    ]


default_handlers = [
    (rf"{ORG_PATH}/collaborators", CollaboratorsHandler),
    (rf"{ORG_PATH}/team/(?P<teamname>{NAME})/permissions", TeamPermissionsHandler),
] + _robot_routes(ORG_PATH) + _robot_routes(rf"{API}/user")
