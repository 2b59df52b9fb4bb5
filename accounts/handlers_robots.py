"""/api/v1 for robot accounts, in organizations and in a user's own namespace (Quay's paths and shapes)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from slipway.api import API, ApiHandler

from . import orgs, robots, users, views
from .permissions import is_namespace_admin

if TYPE_CHECKING:  # annotations only: handlers touch no models
    from .models import Account

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
            namespace = users.get_account(self.identity.account_id)
        if not is_namespace_admin(self.identity, namespace):
            raise self.deny(f"You must administer namespace '{namespace.name}' to manage its robots")
        return namespace

    def robot(self) -> tuple[Account, Account]:
        namespace = self.namespace()
        return namespace, robots.get_robot(namespace, self.path_kwargs["robot_shortname"])


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
        self.send(views.robot(users.get_account(robot.id), token))


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
        (robot, RobotHandler),
        (rf"{robot}/regenerate", RobotRegenerateHandler),
        (rf"{robot}/credentials", RobotCredentialsHandler),
    ]


default_handlers = _routes(rf"{API}/organization/(?P<orgname>{NAME})") + _routes(rf"{API}/user")
