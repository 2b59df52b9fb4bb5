"""/api/v1 answers about who holds which repository permissions, on accounts' paths: an organization's
collaborators, a team's and a robot's repository permissions, and the robot list with their grants
(Quay's paths and shapes). They live here because they know repositories; accounts does not."""
from __future__ import annotations

from accounts import orgs, views
from accounts.handlers import ORG_PATH, OrgAdminHandler
from accounts.handlers_robots import NAME, RobotBase
from accounts.robots import list_robots, robot_token
from slipway.api import API

from .permissions import collaborators, grants_of, set_roles


class CollaboratorsHandler(OrgAdminHandler):
    async def get(self, orgname: str) -> None:
        """Users with direct repository permissions in the organization who are in none of its teams."""
        org = self.org_as_admin(orgname)
        self.send({"collaborators": [{**views.entity(account), "repositories": names}
                                     for account, names in collaborators(org)]})


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
                                 for t in orgs.teams_of(robot)]
            result.append(view)
        self.send({"robots": result})


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
        wanted = [(entry["repository"], entry["role"]) for entry in self.json_body()["permissions"]]
        set_roles(robot, namespace, wanted, self.identity, self.client_ip)
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
