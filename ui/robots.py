"""Robot accounts on a namespace's page (an organization's, a user's own): list, create, credentials, regenerate,
delete — with ``accounts.robots``, as ``/api/v1/.../robots`` does.

A page mixes ``RobotForms`` in and sets ``self.namespace`` (the organization or the user) in ``load``; its
robots tab template includes ``robots.html``. ``?robot=<short name>`` opens the credentials dialog: the
podman/docker login commands, a ``config.json`` and a Kubernetes secret, each from ``robots.credentials``
(the API's ``.../credentials?format=``), with copy buttons.
"""
from __future__ import annotations

from accounts import robots
from accounts.permissions import is_namespace_admin
from slipway.errors import Forbidden

FORMATS = (("podman-login", "podman login"), ("docker-login", "docker login"),
           ("docker-config", "config.json"), ("kubernetes", "Kubernetes secret"))


class RobotForms:
    action_fields = {"create_robot": "robot_name"}

    def check_robot_admin(self) -> None:
        if not is_namespace_admin(self.identity, self.namespace):
            raise Forbidden(f"You must administer {self.namespace.name} to manage its robots")

    def robot_context(self) -> dict:
        self.check_robot_admin()
        shown = self.get_argument("robot", "")
        credentials = None
        if shown:
            robot = robots.get_robot(self.namespace, shown)
            host = self.registry_host()
            credentials = {"robot": robot, "files": [
                (fmt, label, robots.credentials(robot, host, fmt)[0].rstrip("\n")) for fmt, label in FORMATS]}
        return {"robots": robots.list_robots(self.namespace), "credentials": credentials,
                "robot_prefix": self.namespace.name + "+"}

    def do_create_robot(self) -> str:
        self.check_robot_admin()
        robots.check_enabled(self.services.config.auth.robots_enabled)
        robot, _ = robots.create_robot(self.namespace, self.form("robot_name"), self.form("robot_description"),
                                       self.identity, self.client_ip)
        return f"Robot {robot.name} created: open its credentials to log in with it."

    def do_regenerate_robot(self) -> str:
        self.check_robot_admin()
        robot = robots.get_robot(self.namespace, self.form("robot"))
        robots.regenerate(robot, self.identity, self.client_ip)
        return f"The token of {robot.name} was replaced: the old one no longer works."

    def do_delete_robot(self) -> str:
        self.check_robot_admin()
        robot = robots.get_robot(self.namespace, self.form("robot"))
        robots.delete_robot(robot, self.identity, self.client_ip)
        return f"Robot {robot.name} deleted."
